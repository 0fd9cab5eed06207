# Remote state for infra-tf: a versioned, encrypted, private S3 bucket and
# a DynamoDB table for state locking.

data "aws_caller_identity" "current" {}

locals {
  state_bucket_name = coalesce(var.state_bucket_name, "cohuron-terraform-state-${data.aws_caller_identity.current.account_id}")
}

resource "aws_s3_bucket" "state" {
  bucket = local.state_bucket_name

  lifecycle {
    prevent_destroy = true
  }
}

# Private, versioned, encrypted, TLS only; old state versions are kept
# noncurrent_version_days (modules/bucket).
module "state_bucket" {
  source = "../modules/bucket"

  bucket                        = aws_s3_bucket.state.id
  noncurrent_version_days       = var.noncurrent_version_days
  noncurrent_version_rule_id    = "expire-old-state-versions"
  remove_expired_delete_markers = false
}

resource "aws_dynamodb_table" "lock" {
  name                        = var.lock_table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "LockID"
  deletion_protection_enabled = true

  attribute {
    name = "LockID"
    type = "S"
  }

  server_side_encryption {
    enabled = true
  }

  point_in_time_recovery {
    enabled = true
  }

  lifecycle {
    prevent_destroy = true
  }
}
