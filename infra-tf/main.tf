# One environment of the Cohuron deploy platform: the store the publisher
# writes and the agents poll, the signing key, the CI roles, and the hosts.
# Nothing pushes to the hosts: each agent pulls, verifies and converges.

data "aws_caller_identity" "current" {}

locals {
  name       = "${var.project}-${var.env}"
  account_id = data.aws_caller_identity.current.account_id

  code_bucket_name      = coalesce(var.code_bucket_name, "${var.project}-code-${var.env}-${local.account_id}")
  artifacts_bucket_name = coalesce(var.artifacts_bucket_name, "${var.project}-artifacts-${var.env}-${local.account_id}")

  # Operators create the app's secrets here (SecureString); the manifest
  # refers to them as {ssm: /cohuron/<env>/NAME} and the agent resolves them.
  ssm_parameter_prefix = "/cohuron/${var.env}/"
}

module "vpc" {
  source = "./modules/vpc"

  name   = local.name
  cidr   = var.vpc_cidr
  region = var.region
}

module "artifacts" {
  source = "./modules/s3"

  bucket_name             = local.artifacts_bucket_name
  noncurrent_version_days = var.noncurrent_version_days
}

module "store" {
  source = "./modules/s3-code"

  bucket_name                    = local.code_bucket_name
  prefix                         = var.store_prefix
  noncurrent_version_days        = var.noncurrent_version_days
  status_noncurrent_version_days = var.status_noncurrent_version_days
}

module "signing" {
  source = "./modules/kms-signing"

  env                = var.env
  publisher_role_arn = module.github_oidc.publisher_role_arn
}

module "github_oidc" {
  source = "./modules/github-oidc"

  name              = local.name
  oidc_provider_arn = var.github_oidc_provider_arn
  github_ops_repo   = var.github_ops_repo
  github_app_repo   = var.github_app_repo
  code_bucket_arn   = module.store.bucket_arn
  store_prefix      = module.store.prefix
  kms_key_arn       = module.signing.key_arn
}

module "hosts" {
  source = "./modules/ec2"

  name                   = local.name
  env                    = var.env
  region                 = var.region
  host_count             = var.instance_count
  instance_type          = var.instance_type
  ami_id                 = var.ami_id
  root_volume_size_gb    = var.root_volume_size_gb
  termination_protection = var.termination_protection
  vpc_id                 = module.vpc.vpc_id
  subnet_ids             = module.vpc.public_subnet_ids
  ingress_ports          = var.ingress_ports
  ingress_cidrs          = var.ingress_cidrs

  store_url            = module.store.store_url
  code_bucket_arn      = module.store.bucket_arn
  store_prefix         = module.store.prefix
  artifacts_bucket     = module.artifacts.bucket
  artifacts_bucket_arn = module.artifacts.bucket_arn
  agent_binary_key     = var.agent_binary_key
  agent_binary_sha256  = var.agent_binary_sha256
  ssm_parameter_prefix = local.ssm_parameter_prefix
  app_user             = var.app_user
  npm_global_packages  = var.npm_global_packages

  # What the agent trusts, from this repository: the environment's trust
  # policy, the public half of the KMS key CI signs with (the path
  # policies/<env>.yaml names), and the systemd unit.
  trust_policy_yaml  = file("${path.root}/../policies/${var.env}.yaml")
  signing_public_key = module.signing.public_key_pem
  agent_unit         = file("${path.root}/../packaging/cohuron-agent.service")
}

module "dns" {
  source = "./modules/route53"
  count  = var.zone_id != null && var.domain_name != null ? 1 : 0

  zone_id           = var.zone_id
  domain_name       = var.domain_name
  hosts             = zipmap(module.hosts.host_ids, module.hosts.public_ips)
  create_app_record = var.create_app_record
}
