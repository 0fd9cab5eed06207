# What every bucket of infra-tf gets, whatever it holds (the store, the
# artifacts, the Terraform state), so that none of them can drift into a
# weaker setting than the others:
#   - private: the public access block with all four settings on, and object
#     ownership BucketOwnerEnforced (ACLs off), so IAM policies alone decide
#     who may read or write;
#   - versioned: an overwritten or deleted object can be recovered;
#   - encrypted at rest (SSE-S3, AES256);
#   - a bucket policy that denies every request not made over TLS;
#   - lifecycle, so that versioning does not keep everything forever:
#     noncurrent versions expire after noncurrent_version_days, unfinished
#     multipart uploads are removed after abort_multipart_days, then the
#     caller's prefix_noncurrent_version_rules and (unless turned off) the
#     removal of expired delete markers.
#
# The caller keeps the aws_s3_bucket resource and passes its name: Terraform
# cannot take lifecycle meta-arguments (the state bucket's prevent_destroy)
# from a variable.

data "aws_partition" "current" {}

locals {
  bucket_arn = "arn:${data.aws_partition.current.partition}:s3:::${var.bucket}"
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = var.bucket

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = var.bucket

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = var.bucket

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = var.bucket

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

data "aws_iam_policy_document" "tls_only" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      local.bucket_arn,
      "${local.bucket_arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = var.bucket
  policy = data.aws_iam_policy_document.tls_only.json

  # S3 rejects concurrent changes to a bucket's access settings.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = var.bucket

  rule {
    id     = var.noncurrent_version_rule_id
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_multipart_days
    }
  }

  dynamic "rule" {
    for_each = var.prefix_noncurrent_version_rules
    content {
      id     = rule.value.id
      status = "Enabled"

      filter {
        prefix = rule.value.prefix
      }

      noncurrent_version_expiration {
        noncurrent_days = rule.value.noncurrent_days
      }
    }
  }

  dynamic "rule" {
    for_each = var.remove_expired_delete_markers ? ["remove-expired-delete-markers"] : []
    content {
      id     = rule.value
      status = "Enabled"

      filter {}

      expiration {
        expired_object_delete_marker = true
      }
    }
  }

  # Lifecycle rules need versioning to be in place first.
  depends_on = [aws_s3_bucket_versioning.this]
}
