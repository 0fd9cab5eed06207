variable "name" {
  description = "Name prefix of the roles (<project>-<env>)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "Existing token.actions.githubusercontent.com provider to reuse; null creates one (an account holds one per URL)."
  type        = string
  default     = null
}

variable "github_ops_repo" {
  description = "owner/name of the operations repository (manifests, policies, infra)."
  type        = string
}

variable "github_app_repo" {
  description = "owner/name of the application repository."
  type        = string
}

variable "code_bucket_arn" {
  description = "ARN of the store's bucket."
  type        = string
}

variable "store_prefix" {
  description = "Prefix of the store in the bucket (no slashes at either end)."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the release signing key."
  type        = string
}
