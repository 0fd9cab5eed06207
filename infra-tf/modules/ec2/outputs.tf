output "host_ids" {
  description = "Host names (<env>-<i>), the agents' hostId."
  value       = local.host_ids
}

output "instance_ids" {
  description = "Instance IDs, in the order of host_ids."
  value       = aws_instance.host[*].id
}

output "public_ips" {
  description = "Elastic IPs, in the order of host_ids."
  value       = aws_eip.host[*].public_ip
}

output "role_arns" {
  description = "Each host's IAM role, in the order of host_ids."
  value       = aws_iam_role.agent[*].arn
}

output "security_group_id" {
  description = "Security group of the hosts."
  value       = aws_security_group.host.id
}
