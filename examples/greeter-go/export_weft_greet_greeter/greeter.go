// Package export_weft_greet_greeter is the Go greeter: what weft:greet/greeter's `greet` does.
// The bindings `weft build` generates (wit_exports.go, weft_greet_greeter/) call it.
package export_weft_greet_greeter

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"wit_component/weft_greet_greeter"
)

// Greet greets name, and upper-cases each tag.
func Greet(name string, tags []string) weft_greet_greeter.Greeting {
	message := fmt.Sprintf("Hello, %s! (from Go)", name)
	upper := make([]string, len(tags))
	for i, tag := range tags {
		upper[i] = strings.ToUpper(tag)
	}
	return weft_greet_greeter.Greeting{
		Message: message,
		Length:  uint32(utf8.RuneCountInString(message)),
		Tags:    upper,
	}
}
