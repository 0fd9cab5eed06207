# The store: s3://<bucket>/<prefix> with bundles/ and releases/ (written by
# the publisher, signed) and status/ (one object per host, written by its
# agent). Private, versioned (an overwritten object can be recovered),
# encrypted, TLS only (modules/bucket). Who may touch which prefix is
# decided by the roles (modules/github-oidc, modules/ec2), not here.

locals {
  prefix = trim(var.prefix, "/")
}

resource "aws_s3_bucket" "this" {
  bucket = var.bucket_name
}

module "bucket" {
  source = "../bucket"

  bucket = aws_s3_bucket.this.id

  # Bundles and releases are never overwritten (releases are conditional
  # puts); what becomes noncurrent is mostly the latest hint.
  noncurrent_version_days = var.noncurrent_version_days
  abort_multipart_days    = var.abort_multipart_days

  # Status objects are rewritten on every converge: keep their history short.
  prefix_noncurrent_version_rules = [{
    id              = "expire-old-status-versions"
    prefix          = "${local.prefix}/status/"
    noncurrent_days = var.status_noncurrent_version_days
  }]
}
