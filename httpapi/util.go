package httpapi

import (
	"slices"
	"strings"
)

// sortBy orders a list by a string key.
func sortBy[T any](xs []T, key func(T) string) {
	slices.SortFunc(xs, func(a, b T) int { return strings.Compare(key(a), key(b)) })
}

// orEmpty makes a nil list encode as [] rather than null.
func orEmpty(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return slices.Clone(xs)
}
