variable "name" {
  description = "Name prefix (<project>-<env>)."
  type        = string
}

variable "cidr" {
  description = "CIDR of the VPC."
  type        = string
}

variable "region" {
  description = "Region, for the S3 gateway endpoint's service name."
  type        = string
}

variable "az_count" {
  description = "Number of availability zones, one public subnet each."
  type        = number
  default     = 2
}
