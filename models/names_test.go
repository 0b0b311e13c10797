package models_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/omniq/omniq/models"
)

func TestValidateFunctionName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		wantErr string // substring of the error, "" for valid
	}{
		{"resize", ""},
		{"send-email_v2", ""},
		{"A", ""},
		{strings.Repeat("f", 128), ""},
		{"", "is required"},
		{strings.Repeat("f", 129), "129 bytes, over the 128-byte limit"},
		{"a.b", `'.' at byte 1`},
		{"tasks.*", `'.' at byte 5`},
		{"*", `'*' at byte 0`},
		{">", `'>' at byte 0`},
		{"has space", `' ' at byte 3`},
		{"tab\t", `'\t' at byte 3`},
		{"ünï", `'ü' at byte 0`},
		{"a/b", `'/' at byte 1`},
	}
	for _, tt := range tests {
		err := models.ValidateFunctionName(tt.name)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateFunctionName(%q) = %v, want nil", tt.name, err)
			}
			continue
		}
		var fe *models.FieldError
		if !errors.Is(err, models.ErrInvalidFunctionName) || !errors.As(err, &fe) || fe.Field != "function" {
			t.Errorf("ValidateFunctionName(%q) = %v, want function FieldError wrapping ErrInvalidFunctionName", tt.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateFunctionName(%q) = %q, want it to say %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestValidateTaskID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id      string
		wantErr string
	}{
		{"0f8c2a1e-7b1d-4f5e-9a36-2d9c6a1e7b00", ""},
		{"OMNIQ_TASKS-12345", ""},
		{"order.42=paid", ""},
		{strings.Repeat("i", 256), ""},
		{"", "is required"},
		{strings.Repeat("i", 257), "over the 256-byte limit"},
		{".hidden", "must not start or end with '.'"},
		{"trailing.", "must not start or end with '.'"},
		{"a..b", "must not contain '..'"},
		{"a b", `' ' at byte 1`},
		{"a/b", `'/' at byte 1`},
		{"a*", `'*' at byte 1`},
		{"a>", `'>' at byte 1`},
		{"a:b", `':' at byte 1`},
	}
	for _, tt := range tests {
		err := models.ValidateTaskID(tt.id)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateTaskID(%q) = %v, want nil", tt.id, err)
			}
			continue
		}
		var fe *models.FieldError
		if !errors.Is(err, models.ErrInvalidTaskID) || !errors.As(err, &fe) || fe.Field != "id" {
			t.Errorf("ValidateTaskID(%q) = %v, want id FieldError wrapping ErrInvalidTaskID", tt.id, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateTaskID(%q) = %q, want it to say %q", tt.id, err, tt.wantErr)
		}
	}
}
