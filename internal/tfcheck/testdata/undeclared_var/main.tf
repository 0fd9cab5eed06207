variable "name" {
  type = string
}

module "child" {
  source = "./child"
  name   = var.name
}

output "x" {
  value = var.label
}
