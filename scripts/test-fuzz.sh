#!/usr/bin/env bash
# Placeholder until the fuzz suite lands.
echo "test-fuzz: no tests yet"
