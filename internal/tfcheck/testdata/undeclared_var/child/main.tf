variable "name" {
  type = string
}

output "out" {
  value = "${var.name}-${var.size}"
}
