# Read by operators and by tooling through `terraform output -json`: keep the
# names stable.

output "region" {
  description = "AWS region of this environment."
  value       = var.region
}

output "env" {
  description = "Environment name (the agents' env, policies/<env>.yaml)."
  value       = var.env
}

output "store_url" {
  description = "Store URL for publisher --store and the agents: s3://<code bucket>/<prefix>."
  value       = module.store.store_url
}

output "code_bucket" {
  description = "Bucket of the store."
  value       = module.store.bucket
}

output "artifacts_bucket" {
  description = "Bucket of the agent binaries: upload one, then set agent_binary_key and agent_binary_sha256."
  value       = module.artifacts.bucket
}

output "kms_key_arn" {
  description = "ARN of the release signing key (ECC_NIST_P256, SIGN_VERIFY)."
  value       = module.signing.key_arn
}

output "kms_key_uri" {
  description = "The signing key as a publisher --key reference."
  value       = "awskms:///${module.signing.key_arn}"
}

output "kms_public_key_pem" {
  description = "Public key of the signing key (PEM); installed on every host as /etc/cohuron-agent/keys/ci-kms.pub."
  value       = module.signing.public_key_pem
}

output "publisher_role_arn" {
  description = "Role GitHub Actions assumes on main of the ops and app repositories to publish."
  value       = module.github_oidc.publisher_role_arn
}

output "preview_role_arn" {
  description = "Read-only role GitHub Actions assumes in pull requests of the ops repository."
  value       = module.github_oidc.preview_role_arn
}

output "host_ids" {
  description = "Host names: each agent's hostId, its status object status/<env>/<host>.json."
  value       = module.hosts.host_ids
}

output "instance_ids" {
  description = "EC2 instance IDs, in the order of host_ids (aws ssm start-session --target ID)."
  value       = module.hosts.instance_ids
}

output "host_public_ips" {
  description = "Elastic IP of each host, by host id."
  value       = zipmap(module.hosts.host_ids, module.hosts.public_ips)
}

output "host_fqdns" {
  description = "DNS name of each host, by host id (empty without zone_id and domain_name)."
  value       = try(module.dns[0].host_fqdns, {})
}

output "ssm_parameter_prefix" {
  description = "Where the app's secrets go: aws ssm put-parameter --type SecureString --name <prefix>NAME."
  value       = local.ssm_parameter_prefix
}

output "github_variables" {
  description = "Actions variables (not secrets) to set in the ops and app repositories."
  value = {
    COHURON_STORE          = module.store.store_url
    COHURON_ENV            = var.env
    COHURON_KMS_KEY        = "awskms:///${module.signing.key_arn}"
    AWS_REGION             = var.region
    COHURON_PUBLISHER_ROLE = module.github_oidc.publisher_role_arn
    COHURON_PREVIEW_ROLE   = module.github_oidc.preview_role_arn
  }
}
