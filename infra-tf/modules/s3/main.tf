# The artifacts bucket: agent binaries (each host's role may read exactly
# the one its user data installs) and, if wanted, schema dumps. Private,
# versioned, encrypted, TLS only (modules/bucket).

resource "aws_s3_bucket" "this" {
  bucket = var.bucket_name
}

module "bucket" {
  source = "../bucket"

  bucket                  = aws_s3_bucket.this.id
  noncurrent_version_days = var.noncurrent_version_days
  abort_multipart_days    = var.abort_multipart_days
}
