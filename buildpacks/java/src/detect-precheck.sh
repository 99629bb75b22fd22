[ -f pom.xml ] || [ -f mvnw ] || [ -f build.gradle ] || [ -f build.gradle.kts ] || {
  echo 'kiln/java: looked for pom.xml, mvnw, build.gradle or build.gradle.kts: none found'
  exit 100
}
# Whatever is there, the Build Plan (the one src/detect.ts writes) is written here without Node.js.
printf '[[provides]]\nname = "jvm-application"\n\n[[requires]]\nname = "jvm-application"\n' >"${CNB_BUILD_PLAN_PATH:-$2}"
exit 0
