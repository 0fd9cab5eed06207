variable "zone_id" {
  description = "Route 53 hosted zone that holds domain_name."
  type        = string
}

variable "domain_name" {
  description = "Domain of the app, e.g. app.cohuron.com; hosts get <host>.<domain_name>."
  type        = string
}

variable "hosts" {
  description = "Public IPv4 address of each host, by host id."
  type        = map(string)
}

variable "create_app_record" {
  description = "Also point domain_name itself at every host."
  type        = bool
  default     = true
}

variable "ttl" {
  description = "TTL of the records, in seconds."
  type        = number
  default     = 300
}
