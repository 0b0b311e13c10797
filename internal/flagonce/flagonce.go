// Package flagonce makes a command-line flag that takes one value refuse a
// second, different one. pflag keeps the last value of a flag given twice
// without a word (--function a --function b selects b), so the first is
// silently ignored; OmniQ's commands refuse it instead, naming both.
package flagonce

import (
	"fmt"

	"github.com/spf13/pflag"
)

// Wrap makes every flag of fs refuse a second value that differs from its
// first, except booleans and the flags named in repeatable. The same value
// given again is accepted. Flags wrapped already are left as they are, so
// flag sets that share flags (a command's and its parent's persistent
// ones) can each be wrapped.
func Wrap(fs *pflag.FlagSet, repeatable ...string) {
	fs.VisitAll(func(fl *pflag.Flag) {
		if _, done := fl.Value.(*onceValue); done || fl.Value.Type() == "bool" {
			return
		}
		for _, r := range repeatable {
			if fl.Name == r {
				return
			}
		}
		_, marked := fl.Annotations[listAnnotation]
		fl.Value = &onceValue{Value: fl.Value, list: marked || fl.Value.Type() == "stringSlice"}
	})
}

// onceValue is a flag's value that may be set once (or again to the same).
type onceValue struct {
	pflag.Value
	list  bool // its one value may list several (MarkList, or a string slice)
	first *string
}

// listAnnotation marks a flag whose one value is a comma-separated list
// (MarkList): a second one is refused with the hint to list them in one.
const listAnnotation = "omniq_flagonce_list"

// MarkList says that the flag name of fs takes several values in one,
// comma-separated (--status failed,succeeded), so that giving it twice is
// refused with the hint to do that. String slices need no mark. Call it
// before Wrap.
func MarkList(fs *pflag.FlagSet, name string) {
	_ = fs.SetAnnotation(name, listAnnotation, []string{"true"})
}

// Set sets the value the first time, accepts the same value again, and
// refuses another.
func (v *onceValue) Set(s string) error {
	if v.first != nil {
		if *v.first == s {
			return nil
		}
		if v.list {
			return fmt.Errorf("given twice (%q, then %q): give it once, with the values comma-separated", *v.first, s)
		}
		return fmt.Errorf("given twice (%q, then %q): give it once", *v.first, s)
	}
	if err := v.Value.Set(s); err != nil {
		return err
	}
	v.first = &s
	return nil
}
