variable "manifest_paths" {
  description = "teeform measurement manifests (kind eif, schema_version 1 or 2) allowed to receive the key; the first is the deployed build, the rest stay valid during a rollout."
  type        = list(string)
  validation {
    condition     = length(var.manifest_paths) > 0
    error_message = "At least one manifest path is needed."
  }
}

variable "pcrs" {
  description = "EIF PCRs the release statements pin (teeform target setting attestation.pcrs)."
  type        = list(string)
  default     = ["PCR0", "PCR1", "PCR2"]
  validation {
    condition     = length(var.pcrs) > 0 && alltrue([for p in var.pcrs : contains(["PCR0", "PCR1", "PCR2", "PCR8"], p)])
    error_message = "The pcrs must be a non-empty subset of PCR0, PCR1, PCR2 and PCR8."
  }
}

variable "image_sha384" {
  description = "Also pin kms:RecipientAttestation:ImageSha384 (teeform target setting attestation.imageSha384)."
  type        = bool
  default     = true
}

variable "admin_arns" {
  description = "Key administrators (key-management actions only, no plaintext operation). Usually the account root."
  type        = list(string)
  validation {
    condition     = length(var.admin_arns) > 0
    error_message = "A key needs at least one administrator principal."
  }
}

variable "enclave_role_arn" {
  description = "The enclave host's instance role: the principal of every release statement."
  type        = string
}

variable "deployer_arn" {
  description = "The principal that seals secrets to the key (kms:Encrypt and kms:DescribeKey only)."
  type        = string
}

variable "break_glass_arn" {
  description = "policyUpdates locked: the only role allowed kms:PutKeyPolicy (an explicit Deny covers everyone else). null = open."
  type        = string
  default     = null
}

variable "source_vpce" {
  description = "KMS interface VPC endpoint id the release statements require (aws:SourceVpce), or null."
  type        = string
  default     = null
}
