output "host_fqdns" {
  description = "DNS name of each host, by host id."
  value       = { for host, record in aws_route53_record.host : host => record.fqdn }
}

output "app_fqdn" {
  description = "DNS name of the app record (null when not created)."
  value       = one(aws_route53_record.app[*].fqdn)
}
