variable "region" {
  type = string
}

variable "env" {
  type    = string
  default = "prod"
}
