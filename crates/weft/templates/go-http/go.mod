// The module name is the one `wit-bindgen go` bindings import their packages under.
module wit_component

go 1.24

require go.bytecodealliance.org/pkg v0.4.0

// weft build writes the bindings' runtime package here; nothing is downloaded.
replace go.bytecodealliance.org/pkg => ./build/go-pkg
