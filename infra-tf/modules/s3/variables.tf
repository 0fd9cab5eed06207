variable "bucket_name" {
  description = "Name of the artifacts bucket."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept."
  type        = number
  default     = 90
}

variable "abort_multipart_days" {
  description = "Days after which an unfinished multipart upload is removed."
  type        = number
  default     = 7
}
