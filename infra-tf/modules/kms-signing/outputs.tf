output "key_arn" {
  description = "ARN of the signing key."
  value       = aws_kms_key.signing.arn
}

output "alias_name" {
  description = "Alias of the signing key."
  value       = aws_kms_alias.signing.name
}

output "public_key_pem" {
  description = "Public key (PEM, SubjectPublicKeyInfo) the hosts' trust policy refers to."
  value       = data.aws_kms_public_key.signing.public_key_pem
}
