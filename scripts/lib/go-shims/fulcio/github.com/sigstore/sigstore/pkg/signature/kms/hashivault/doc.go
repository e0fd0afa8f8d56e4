// Package hashivault is an empty mayfly stand-in: Debian's sigstore lacks the HashiCorp Vault KMS
// back end (its SDK is not packaged), so hashivault:// keys are unavailable in this Fulcio build.
package hashivault
