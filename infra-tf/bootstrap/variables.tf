variable "region" {
  description = "Region of the state bucket and the lock table."
  type        = string
  default     = "us-east-1"
}

variable "state_bucket_name" {
  description = "Name of the state bucket. Default: cohuron-terraform-state-<account id>."
  type        = string
  default     = null
}

variable "lock_table_name" {
  description = "Name of the DynamoDB lock table."
  type        = string
  default     = "cohuron-terraform-locks"
}

variable "noncurrent_version_days" {
  description = "Days old versions of state files are kept (they are how a bad apply is undone)."
  type        = number
  default     = 365
}
