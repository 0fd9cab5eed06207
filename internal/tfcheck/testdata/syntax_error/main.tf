variable "x" {
  type = string
}

output "y" {
  value = var.x +
}
