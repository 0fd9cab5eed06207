variable "bucket" {
  description = "Name of the bucket to harden (the caller's aws_s3_bucket id)."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept."
  type        = number
}

variable "abort_multipart_days" {
  description = "Days after which an unfinished multipart upload is removed."
  type        = number
  default     = 7
}

variable "noncurrent_version_rule_id" {
  description = "ID of the lifecycle rule that expires noncurrent versions and aborts multipart uploads."
  type        = string
  default     = "expire-noncurrent-versions"
}

variable "prefix_noncurrent_version_rules" {
  description = "Extra lifecycle rules, in this order after the first: noncurrent versions of objects under prefix expire after noncurrent_days."
  type = list(object({
    id              = string
    prefix          = string
    noncurrent_days = number
  }))
  default = []
}

variable "remove_expired_delete_markers" {
  description = "Add the last lifecycle rule, remove-expired-delete-markers (a delete marker with no versions left behind it is removed)."
  type        = bool
  default     = true
}
