package models

import (
	"strings"
	"unicode/utf8"
)

// MaxFunctionNameBytes is the longest function name accepted.
const MaxFunctionNameBytes = 128

// MaxTaskIDBytes is the longest task id accepted.
const MaxTaskIDBytes = 256

// ValidateFunctionName returns nil when name can be used as a function name:
// 1 to MaxFunctionNameBytes bytes of A-Z, a-z, 0-9, '_' and '-'. Function
// names become one token of a NATS subject (omniq.tasks.<function>), so
// anything else — dots, wildcards, spaces — is refused rather than escaped.
// The error is a *FieldError wrapping ErrInvalidFunctionName.
func ValidateFunctionName(name string) error {
	if name == "" {
		return fieldError(ErrInvalidFunctionName, "function", "is required")
	}
	if len(name) > MaxFunctionNameBytes {
		return fieldError(ErrInvalidFunctionName, "function", "is %d bytes, over the %d-byte limit", len(name), MaxFunctionNameBytes)
	}
	for i := 0; i < len(name); i++ {
		if !isTokenByte(name[i]) {
			r, _ := utf8.DecodeRuneInString(name[i:])
			return fieldError(ErrInvalidFunctionName, "function", "%q has %q at byte %d; only A-Z a-z 0-9 _ - are allowed", name, r, i)
		}
	}
	return nil
}

// ValidateTaskID returns nil when id can be used as a task id: 1 to
// MaxTaskIDBytes bytes of A-Z, a-z, 0-9, '_', '-', '=' and '.', not starting
// or ending with '.' and without "..". Task ids are keys of the state bucket, so they follow
// the JetStream KV key rules. The error is a *FieldError wrapping
// ErrInvalidTaskID.
func ValidateTaskID(id string) error {
	if id == "" {
		return fieldError(ErrInvalidTaskID, "id", "is required")
	}
	if len(id) > MaxTaskIDBytes {
		return fieldError(ErrInvalidTaskID, "id", "is %d bytes, over the %d-byte limit", len(id), MaxTaskIDBytes)
	}
	if id[0] == '.' || id[len(id)-1] == '.' {
		return fieldError(ErrInvalidTaskID, "id", "%q must not start or end with '.'", id)
	}
	if strings.Contains(id, "..") {
		return fieldError(ErrInvalidTaskID, "id", "%q must not contain '..'", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !isTokenByte(c) && c != '.' && c != '=' {
			r, _ := utf8.DecodeRuneInString(id[i:])
			return fieldError(ErrInvalidTaskID, "id", "%q has %q at byte %d; only A-Z a-z 0-9 _ - = . are allowed", id, r, i)
		}
	}
	return nil
}

func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
