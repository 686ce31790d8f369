#!/usr/bin/env bash
# One TSV line per method of a cli-times.sh results folder: method, wall s, CPU s (user + system), peak RSS MB, exit status.
for t in "$1"/*.time; do
  name=$(basename "$t" .time)
  awk -F': ' -v name="$name" '
    /Elapsed \(wall clock\)/ {n=split($2,p,":"); w=0; for(i=1;i<=n;i++) w=w*60+p[i]}
    /(User|System) time \(seconds\)/ {c+=$2}
    /Maximum resident set size/ {r=$2/1024}
    /Exit status/ {e=$2}
    END {printf "%s\t%.1f\t%.1f\t%.0f\t%s\n", name, w, c, r, e}' "$t"
done
