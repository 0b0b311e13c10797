package flagonce_test

import (
	"strings"
	"testing"

	"github.com/omniq/omniq/internal/flagonce"
	"github.com/spf13/pflag"
)

// A flag of one value given twice kept the last value without a word;
// wrapped, a second different value is refused naming both, the same
// value again is accepted, and booleans and repeatable flags are left
// alone.
func TestWrapRefusesASecondValue(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" when the args parse
	}{
		{[]string{"--function", "a", "--function", "b"}, `invalid argument "b" for "--function" flag: given twice ("a", then "b"): give it once`},
		{[]string{"--status", "failed", "--status", "succeeded"}, `given twice ("failed", then "succeeded"): give it once, with the values comma-separated`},
		{[]string{"--limit", "5", "--limit=6"}, `given twice ("5", then "6")`},
		{[]string{"--function", "a", "--function", "a"}, ""},
		{[]string{"--json", "--json"}, ""},
		{[]string{"--header", "A=1", "--header", "B=2"}, ""},
		{[]string{"--limit", "x"}, `invalid argument "x" for "--limit" flag`},
	} {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		fs.String("function", "", "")
		fs.String("status", "", "")
		fs.Int("limit", 0, "")
		fs.Bool("json", false, "")
		headers := fs.StringArray("header", nil, "")
		flagonce.MarkList(fs, "status")
		flagonce.Wrap(fs, "header")
		flagonce.Wrap(fs, "header") // wrapping twice changes nothing
		err := fs.Parse(tc.args)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
		}
		if tc.want == "" && tc.args[0] == "--header" && len(*headers) != 2 {
			t.Errorf("--header twice: %q, want both", *headers)
		}
	}
}
