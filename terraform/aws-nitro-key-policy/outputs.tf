output "policy_json" {
  description = "The KMS key policy (JSON) for aws_kms_key.policy (set bypass_policy_lockout_safety_check = true with break_glass_arn)."
  value       = jsonencode(local.policy)
  precondition {
    condition     = length(local.bad_manifests) == 0
    error_message = "Not a teeform eif manifest (schema_version 1 or 2, kind eif): ${join(", ", local.bad_manifests)}."
  }
  precondition {
    condition     = length(local.bad_values) == 0
    error_message = "Pinned measurements must be 96 lowercase hex digits: ${join(", ", local.bad_values)}."
  }
  precondition {
    condition     = length(local.debug_values) == 0
    error_message = "An all-zero (debug-mode) measurement is pinned: ${join(", ", local.debug_values)}."
  }
}

output "measurement_sets" {
  description = "The allowed measurement sets (one per distinct manifest), name -> lowercase hex."
  value       = local.sets
}
