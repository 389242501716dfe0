// Package jsonstrict checks the JSON of token headers and claims for what encoding/json lets pass:
// duplicate member names (where parsers disagree on which value wins) and trailing data.
package jsonstrict
