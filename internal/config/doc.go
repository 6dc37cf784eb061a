// Package config is Tenantgate's configuration: one YAML file, URLs and secrets also from the
// environment, defaults in one place (Default), and validation that names the bad key.
package config
