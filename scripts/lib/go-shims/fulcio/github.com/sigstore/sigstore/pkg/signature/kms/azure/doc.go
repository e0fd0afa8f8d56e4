// Package azure is an empty mayfly stand-in: Debian's sigstore lacks the Azure KMS back end
// (its SDK is not packaged), so azurekms:// keys are unavailable in this Fulcio build.
package azure
