#!/bin/sh
# Print this repository's likely test, lint and type-check commands, most authoritative
# first, one per line as "command  # where it came from". Read-only; runs nothing.
# Usage: sh detect.sh [repository root, default: current directory]
cd "${1:-.}" || exit 2
found=0
say() { printf '%s  # %s\n' "$1" "$2"; found=1; }

if [ -f .github/openase.yml ]; then
    grep -E '^[[:space:]]*-?[[:space:]]*\{?[[:space:]]*(name:.*)?run:' .github/openase.yml |
        sed -e 's/.*run:[[:space:]]*//' -e 's/[,}][[:space:]]*timeout:.*$//' \
            -e 's/[,}][[:space:]]*on_failure:.*$//' -e 's/[,}][[:space:]]*name:.*$//' \
            -e 's/[[:space:]]*}[[:space:]]*$//' -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/" |
        while IFS= read -r command; do printf '%s  # gate in .github/openase.yml\n' "$command"; done
    grep -q 'run:' .github/openase.yml && found=1
fi

for file in Makefile makefile GNUmakefile; do
    [ -f "$file" ] || continue
    for target in test check lint typecheck ci; do
        grep -qE "^$target[[:space:]]*:" "$file" && say "make $target" "target in $file"
    done
done
if [ -f justfile ] || [ -f Justfile ]; then
    for target in test check lint; do
        grep -qhE "^$target[[:space:]]*:" justfile Justfile 2>/dev/null && say "just $target" "justfile"
    done
fi

if [ -f package.json ]; then
    pm=npm
    [ -f pnpm-lock.yaml ] && pm=pnpm
    [ -f yarn.lock ] && pm=yarn
    { [ -f bun.lockb ] || [ -f bun.lock ]; } && pm=bun
    for script in test lint typecheck check; do
        grep -qE "\"$script\"[[:space:]]*:" package.json && say "$pm run $script" "script in package.json"
    done
fi

if [ -f pyproject.toml ] || [ -f setup.cfg ] || [ -f pytest.ini ] || [ -f setup.py ]; then
    run="python -m"
    [ -x .venv/bin/python ] && run=".venv/bin/python -m"
    [ -f poetry.lock ] && run="poetry run python -m"
    [ -f uv.lock ] && run="uv run python -m"
    [ -f tox.ini ] && say "tox" "tox.ini"
    [ -f noxfile.py ] && say "nox" "noxfile.py"
    say "$run pytest -q" "Python project"
    grep -qs 'ruff' pyproject.toml && say "$run ruff check ." "ruff configured in pyproject.toml"
    grep -qs 'mypy' pyproject.toml setup.cfg mypy.ini && say "$run mypy" "mypy configured"
fi

[ -f go.mod ] && say "go test ./..." "go.mod" && say "go vet ./..." "go.mod"
[ -f Cargo.toml ] && say "cargo test" "Cargo.toml" && say "cargo clippy --all-targets" "Cargo.toml"
if [ -f pom.xml ]; then
    if [ -x mvnw ]; then say "./mvnw -q test" "pom.xml"; else say "mvn -q test" "pom.xml"; fi
fi
if [ -f build.gradle ] || [ -f build.gradle.kts ]; then
    if [ -x gradlew ]; then say "./gradlew test" "Gradle build"; else say "gradle test" "Gradle build"; fi
fi
ls ./*.sln ./*.csproj >/dev/null 2>&1 && say "dotnet test" ".NET solution or project"
if [ -f Gemfile ]; then
    if [ -d spec ]; then say "bundle exec rspec" "Gemfile and spec/"; else say "bundle exec rake test" "Gemfile"; fi
fi
[ -f mix.exs ] && say "mix test" "mix.exs"
[ -f composer.json ] && say "vendor/bin/phpunit" "composer.json"
[ -f CMakeLists.txt ] && say "ctest --test-dir build --output-on-failure" "CMakeLists.txt (after building)"

if [ "$found" -eq 0 ]; then
    echo "no test command found: read CONTRIBUTING.md, the README and .github/workflows/" >&2
    exit 1
fi
