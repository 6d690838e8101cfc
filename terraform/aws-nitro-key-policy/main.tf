# The AWS KMS key policy of a teeform aws/nitro-enclave target, built from teeform manifests with
# jsondecode(file()). It mirrors components/aws/attested_key.py (build_key_policy, release_statements) and
# teeform/keyrelease.py (one measurement set per allowed manifest, all values required together); a
# differential test (tests/test_terraform.py) compares the two. What the gate pins: our image's PCRs.
#
# Statements: KeyAdministration (admins, no plaintext operation, no kms:CreateGrant), EnclaveRelease1..n
# (one per distinct allowed manifest: StringEqualsIgnoreCase on kms:RecipientAttestation:<name> for every
# pinned name, so no cross product of two builds' values), DeployerSeal, and with break_glass_arn
# BreakGlassPolicyUpdate + DenyPolicyUpdateExceptBreakGlass. Sources: AWS KMS developer guide
# "conditions-nitro-enclave"; IAM JSON policy reference "Condition" and "Policy evaluation logic".

locals {
  manifests = [for p in var.manifest_paths : jsondecode(file(p))]
  names     = concat(var.pcrs, var.image_sha384 ? ["ImageSha384"] : [])

  # one measurement set per manifest, duplicates dropped (the first kept), as teeform.keyrelease.measurement_sets
  sets = distinct([for m in local.manifests : { for n in local.names : n => lower(lookup(m.measurements, n, "")) }])

  bad_manifests = [for i, m in local.manifests : var.manifest_paths[i] if !(try(m.schema_version, 0) == 1 || try(m.schema_version, 0) == 2) || try(m.kind, "") != "eif"]
  bad_values    = flatten([for s in local.sets : [for n, v in s : "${n}=${v == "" ? "<missing>" : v}" if length(regexall("^[0-9a-f]{96}$", v)) == 0]])
  debug_values  = flatten([for s in local.sets : [for n, v in s : n if v == join("", [for i in range(96) : "0"])]])

  admin_actions = [for a in [
    "kms:CreateAlias", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Revoke*",
    "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand",
  ] : a if var.break_glass_arn == null || a != "kms:Put*"]

  vpce_condition = { for k, v in { StringEquals = { "aws:SourceVpce" = var.source_vpce } } : k => v if var.source_vpce != null }

  release_statements = [for i, s in local.sets : {
    Sid       = "EnclaveRelease${i + 1}"
    Effect    = "Allow"
    Principal = { AWS = var.enclave_role_arn }
    Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
    Resource  = "*"
    Condition = merge({ StringEqualsIgnoreCase = { for n, v in s : "kms:RecipientAttestation:${n}" => v } }, local.vpce_condition)
  }]

  glass_statements = [
    {
      Sid       = "BreakGlassPolicyUpdate"
      Effect    = "Allow"
      Principal = { AWS = var.break_glass_arn }
      Action    = ["kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:DescribeKey"]
      Resource  = "*"
    },
    {
      Sid       = "DenyPolicyUpdateExceptBreakGlass"
      Effect    = "Deny"
      Principal = { AWS = "*" }
      Action    = "kms:PutKeyPolicy"
      Resource  = "*"
      Condition = { ArnNotEquals = { "aws:PrincipalArn" = var.break_glass_arn } }
    },
  ]

  statements = concat(
    [{ Sid = "KeyAdministration", Effect = "Allow", Principal = { AWS = var.admin_arns }, Action = local.admin_actions, Resource = "*" }],
    local.release_statements,
    [{ Sid = "DeployerSeal", Effect = "Allow", Principal = { AWS = var.deployer_arn }, Action = ["kms:Encrypt", "kms:DescribeKey"], Resource = "*" }],
    [for s in local.glass_statements : s if var.break_glass_arn != null],
  )

  policy = { Version = "2012-10-17", Statement = local.statements }
}
