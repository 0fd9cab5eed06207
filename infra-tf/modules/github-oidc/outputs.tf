output "oidc_provider_arn" {
  description = "ARN of the GitHub OIDC provider (created here or passed in)."
  value       = local.provider_arn
}

output "publisher_role_arn" {
  description = "Role of the publishing workflows (main of the ops and app repositories)."
  value       = aws_iam_role.publisher.arn
}

output "preview_role_arn" {
  description = "Read-only role of pull request workflows of the ops repository."
  value       = aws_iam_role.preview.arn
}
