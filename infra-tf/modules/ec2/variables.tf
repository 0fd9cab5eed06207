variable "name" {
  description = "Name prefix (<project>-<env>)."
  type        = string
}

variable "env" {
  description = "Environment of the hosts; host i (from 1) is <env>-<i>."
  type        = string
}

variable "region" {
  description = "AWS region (the agent's awsRegion, IAM ARNs)."
  type        = string
}

variable "host_count" {
  description = "Number of hosts."
  type        = number
}

variable "instance_type" {
  description = "EC2 instance type."
  type        = string
}

variable "ami_id" {
  description = "AMI of the hosts; null: the newest official Debian 13 amd64 image."
  type        = string
  default     = null
}

variable "root_volume_size_gb" {
  description = "Size of the encrypted gp3 root volume."
  type        = number
  default     = 60
}

variable "termination_protection" {
  description = "Protect the hosts against API termination."
  type        = bool
  default     = true
}

variable "vpc_id" {
  description = "VPC of the hosts."
  type        = string
}

variable "subnet_ids" {
  description = "Public subnets; hosts are spread over them in turn."
  type        = list(string)
}

variable "ingress_ports" {
  description = "TCP ports open to ingress_cidrs (never 22)."
  type        = list(number)

  validation {
    condition     = !contains(var.ingress_ports, 22)
    error_message = "Port 22 stays closed: use Session Manager."
  }
}

variable "ingress_cidrs" {
  description = "IPv4 CIDRs allowed to reach ingress_ports."
  type        = list(string)
}

variable "store_url" {
  description = "Store URL the agents poll: s3://<bucket>/<prefix>."
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

variable "artifacts_bucket" {
  description = "Bucket of the agent binary."
  type        = string
}

variable "artifacts_bucket_arn" {
  description = "ARN of the artifacts bucket."
  type        = string
}

variable "agent_binary_key" {
  description = "Key of the agent binary in the artifacts bucket."
  type        = string
}

variable "agent_binary_sha256" {
  description = "sha256 (hex) the downloaded agent binary must have."
  type        = string
}

variable "ssm_parameter_prefix" {
  description = "SSM parameter path (with slashes at both ends) whose parameters the agents may read, e.g. /cohuron/prod/."
  type        = string

  validation {
    condition     = startswith(var.ssm_parameter_prefix, "/") && endswith(var.ssm_parameter_prefix, "/")
    error_message = "ssm_parameter_prefix must start and end with a slash, e.g. /cohuron/prod/."
  }
}

variable "app_user" {
  description = "System user the app runs as (the manifest's spec.user)."
  type        = string
}

variable "npm_global_packages" {
  description = "npm packages installed globally at first boot (pnpm, PM2)."
  type        = list(string)
}

variable "trust_policy_yaml" {
  description = "Content of the trust policy (policies/<env>.yaml), installed as /etc/cohuron-agent/policy.yaml."
  type        = string
}

variable "signing_public_key" {
  description = "PEM public key of the release signing key, installed as /etc/cohuron-agent/keys/ci-kms.pub."
  type        = string
}

variable "agent_unit" {
  description = "Content of the systemd unit (packaging/cohuron-agent.service)."
  type        = string
}

variable "agent_interval" {
  description = "The agent's poll interval."
  type        = string
  default     = "30s"
}

variable "agent_jitter" {
  description = "Random extra delay per poll, so hosts do not poll in step."
  type        = string
  default     = "10s"
}
