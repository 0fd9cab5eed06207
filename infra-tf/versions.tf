terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }

  # Partial configuration: bucket, key, region, dynamodb_table and encrypt come
  # from `terraform init -backend-config=backend.hcl` (see backend.hcl.example;
  # the bucket and the table are created once by ./bootstrap).
  backend "s3" {}
}
