# Run once per account, before the root module: it creates what the root
# module's S3 backend needs. Its own state stays local (terraform.tfstate
# here): keep that file safe, or import the two resources if it is lost.
terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project   = "cohuron"
      ManagedBy = "terraform:cohuron/deploy/infra-tf/bootstrap"
    }
  }
}
