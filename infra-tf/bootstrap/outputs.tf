output "state_bucket" {
  description = "The state bucket (backend.hcl: bucket)."
  value       = aws_s3_bucket.state.id
}

output "lock_table" {
  description = "The lock table (backend.hcl: dynamodb_table)."
  value       = aws_dynamodb_table.lock.name
}

output "region" {
  description = "Region of both (backend.hcl: region)."
  value       = var.region
}

output "backend_hcl" {
  description = "A backend.hcl for the root module (one environment: change key per environment)."
  value       = <<-EOT
    bucket         = "${aws_s3_bucket.state.id}"
    key            = "cohuron/prod/terraform.tfstate"
    region         = "${var.region}"
    dynamodb_table = "${aws_dynamodb_table.lock.name}"
    encrypt        = true
  EOT
}
