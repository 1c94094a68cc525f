package main

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func TestModel(t *testing.T) {
	s := time.Second
	op := func(kind, subject, outcome string, call, ret time.Duration) Op {
		return Op{Kind: kind, Subject: subject, Outcome: outcome, Call: call, Return: ret}
	}
	for _, tc := range []struct {
		name string
		ops  []Op
		ok   bool
	}{
		{name: "create, login, revoke, rejected", ok: true, ops: []Op{
			op(opKeyCreate, "k", outOK, 0, s), op(opKeyLogin, "k", outAccepted, 2*s, 3*s),
			op(opKeyRevoke, "k", outOK, 4*s, 5*s), op(opKeyLogin, "k", outRejected, 6*s, 7*s)}},
		{name: "login accepted after the revoke returned", ok: false, ops: []Op{
			op(opKeyCreate, "k", outOK, 0, s), op(opKeyRevoke, "k", outOK, 2*s, 3*s), op(opKeyLogin, "k", outAccepted, 4*s, 5*s)}},
		{name: "login concurrent with the revoke", ok: true, ops: []Op{
			op(opKeyCreate, "k", outOK, 0, s), op(opKeyRevoke, "k", outOK, 2*s, 5*s), op(opKeyLogin, "k", outAccepted, 3*s, 6*s)}},
		{name: "login rejected after the create returned", ok: false, ops: []Op{
			op(opKeyCreate, "k", outOK, 0, s), op(opKeyLogin, "k", outRejected, 2*s, 3*s)}},
		{name: "create of unknown outcome may land later", ok: true, ops: []Op{
			op(opKeyCreate, "k", outUnknown, 0, s), op(opKeyLogin, "k", outRejected, 2*s, 3*s), op(opKeyLogin, "k", outAccepted, 4*s, 5*s)}},
		{name: "refusals and unknown logins carry nothing", ok: true, ops: []Op{
			op(opKeyCreate, "k", outOK, 0, s), op(opKeyLogin, "k", outUnknown, 2*s, 3*s), op(opKeyRevoke, "k", outFail, 4*s, 5*s)}},
		{name: "tenant created twice without a delete", ok: false, ops: []Op{
			op(opTenantCreate, "t", outOK, 0, s), op(opTenantCreate, "t", outOK, 2*s, 3*s)}},
		{name: "tenant created, deleted, created again", ok: true, ops: []Op{
			op(opTenantCreate, "t", outOK, 0, s), op(opTenantDelete, "t", outOK, 2*s, 3*s), op(opTenantDelete, "t", outOK, 4*s, 5*s),
			op(opTenantCreate, "t", outOK, 6*s, 7*s)}},
		{name: "registers are independent", ok: true, ops: []Op{
			op(opKeyCreate, "a", outOK, 0, s), op(opKeyCreate, "b", outOK, 0, s), op(opKeyRevoke, "a", outOK, 2*s, 3*s),
			op(opKeyLogin, "b", outAccepted, 4*s, 5*s), op(opKeyLogin, "a", outRejected, 4*s, 5*s)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _, _, _ := linearizable(tc.ops, 10*s, 10*time.Second)
			if (res == porcupine.Ok) != tc.ok {
				t.Fatalf("porcupine says %s, want ok=%v", res, tc.ok)
			}
		})
	}
}
