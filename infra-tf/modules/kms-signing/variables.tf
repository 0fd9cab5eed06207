variable "env" {
  description = "Environment of the releases this key signs."
  type        = string
}

variable "alias_name" {
  description = "Alias of the key; null: alias/cohuron-release-signing-<env>. A second key (a rotation) needs its own."
  type        = string
  default     = null
}

variable "publisher_role_arn" {
  description = "The only principal that may sign with the key (the CI publisher role)."
  type        = string
}

variable "deletion_window_days" {
  description = "Days between scheduling the key's deletion and its deletion."
  type        = number
  default     = 30
}
