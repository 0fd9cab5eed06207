variable "bucket_name" {
  description = "Name of the code bucket that holds the store."
  type        = string
}

variable "prefix" {
  description = "Prefix of the store in the bucket (no leading or trailing slash)."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept."
  type        = number
  default     = 90
}

variable "status_noncurrent_version_days" {
  description = "Days old versions of status/<env>/<host>.json are kept (each agent rewrites its object on every converge)."
  type        = number
  default     = 30
}

variable "abort_multipart_days" {
  description = "Days after which an unfinished multipart upload (a bundle upload cut short) is removed."
  type        = number
  default     = 7
}
