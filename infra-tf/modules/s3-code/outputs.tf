output "bucket" {
  description = "Name of the code bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the code bucket."
  value       = aws_s3_bucket.this.arn
}

output "prefix" {
  description = "Prefix of the store in the bucket, without slashes at either end."
  value       = local.prefix
}

output "store_url" {
  description = "Store URL: s3://<bucket>/<prefix>."
  value       = "s3://${aws_s3_bucket.this.id}/${local.prefix}"
}
