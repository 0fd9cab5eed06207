# Inputs of the Cohuron deploy platform for one environment. No secrets here:
# application secrets live in SSM Parameter Store under /cohuron/<env>/
# (see README.md), never in tfvars or state.

variable "region" {
  description = "AWS region of every resource of this environment."
  type        = string
  default     = "us-east-1"
}

variable "env" {
  description = "Environment name: the agent's env, the trust policy policies/<env>.yaml, the SSM prefix /cohuron/<env>/."
  type        = string
  default     = "prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.env))
    error_message = "env must be lower-case letters, digits and dashes (at most 20), starting with a letter."
  }
}

variable "project" {
  description = "Prefix of resource names."
  type        = string
  default     = "cohuron"
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

# --- store and artifacts ---------------------------------------------------

variable "code_bucket_name" {
  description = "Bucket of the store (bundles/, releases/, status/). Default: <project>-code-<env>-<account id>."
  type        = string
  default     = null
}

variable "store_prefix" {
  description = "Prefix of the store inside the code bucket: the store URL is s3://<code bucket>/<store_prefix>."
  type        = string
  default     = "deploy"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$", var.store_prefix))
    error_message = "store_prefix must be a relative S3 key prefix without leading or trailing slashes."
  }
}

variable "artifacts_bucket_name" {
  description = "Bucket of the agent binaries (and schema dumps if wanted). Default: <project>-artifacts-<env>-<account id>."
  type        = string
  default     = null
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept in the buckets."
  type        = number
  default     = 90
}

variable "status_noncurrent_version_days" {
  description = "Days old versions of the agents' status objects are kept."
  type        = number
  default     = 30
}

# --- agent -----------------------------------------------------------------

variable "agent_binary_key" {
  description = "Key of the agent binary (linux/amd64) in the artifacts bucket, uploaded by the release process, e.g. agent/v1.4.0/cohuron-agent-linux-amd64."
  type        = string
}

variable "agent_binary_sha256" {
  description = "sha256 of that binary (hex); the first boot fails when the download does not match."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.agent_binary_sha256))
    error_message = "agent_binary_sha256 must be 64 lower-case hex digits (sha256sum output)."
  }
}

variable "app_user" {
  description = "The manifest's spec.user: installs, builds and app processes run as this user, never root. Created by user data."
  type        = string
  default     = "cohuron"
}

variable "npm_global_packages" {
  description = "Node tools the agent drives, installed with npm at first boot."
  type        = list(string)
  default     = ["pnpm@9", "pm2@7"]
}

# --- hosts -------------------------------------------------------------------

variable "instance_count" {
  description = "Number of hosts. Host i (from 1) is named <env>-<i>: its Name tag, its agent hostId, its status object."
  type        = number
  default     = 1
}

variable "instance_type" {
  description = "EC2 instance type of the hosts (the app, PostgreSQL, Redis, MinIO and a pnpm install share it)."
  type        = string
  default     = "t3.large"
}

variable "ami_id" {
  description = "AMI of the hosts. Default: the newest official Debian 13 (amd64) image."
  type        = string
  default     = null
}

variable "root_volume_size_gb" {
  description = "Size of the encrypted root volume: releases kept for rollback, node_modules, Docker volumes."
  type        = number
  default     = 60
}

variable "termination_protection" {
  description = "Protect the hosts against API termination (they hold the Compose volumes, e.g. PostgreSQL)."
  type        = bool
  default     = true
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; two public /24 subnets are cut from it."
  type        = string
  default     = "10.40.0.0/16"
}

variable "ingress_ports" {
  description = "TCP ports open to ingress_cidrs. Never 22: there is no SSH, operators use Session Manager."
  type        = list(number)
  default     = [80, 443]

  validation {
    condition     = !contains(var.ingress_ports, 22)
    error_message = "Port 22 stays closed: use Session Manager (aws ssm start-session)."
  }
}

variable "ingress_cidrs" {
  description = "IPv4 CIDRs allowed to reach ingress_ports."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

# --- GitHub Actions --------------------------------------------------------

variable "github_ops_repo" {
  description = "owner/name of this operations repository: its main branch publishes (manifests), its pull requests may preview."
  type        = string
}

variable "github_app_repo" {
  description = "owner/name of the application repository: its main branch publishes bundles."
  type        = string
}

variable "github_oidc_provider_arn" {
  description = "ARN of an existing token.actions.githubusercontent.com OIDC provider in the account (there can be only one); null creates it."
  type        = string
  default     = null
}

# --- DNS (optional) ----------------------------------------------------------

variable "zone_id" {
  description = "Route 53 hosted zone of domain_name; with domain_name, creates <host>.<domain_name> A records. null: no DNS."
  type        = string
  default     = null
}

variable "domain_name" {
  description = "Domain of the app in zone_id, e.g. app.cohuron.com. null: no DNS."
  type        = string
  default     = null
}

variable "create_app_record" {
  description = "Also point domain_name itself at every host (one A record with all host IPs)."
  type        = bool
  default     = true
}
