// dg::set_allow_tf32 / allow_tf32 and dg::set_deterministic / deterministic:
// defaults, API overrides, and parsing of DG_TF32 / DG_DETERMINISTIC.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "tensor/error.h"
#include "tensor/settings.h"

namespace {

// Sets (or unsets, for nullptr) an environment variable and forgets the
// settings read so far, so the next read parses the environment.
void with_env(const char* name, const char* value) {
  if (value) setenv(name, value, 1);
  else unsetenv(name);
  dg::detail::reset_settings();
}

std::string error_of(bool (*read)()) {
  try {
    read();
  } catch (const dg::Error& e) {
    return e.what();
  }
  return "";
}

TEST(Settings, DefaultsAreOff) {
  with_env("DG_TF32", nullptr);
  with_env("DG_DETERMINISTIC", nullptr);
  EXPECT_FALSE(dg::allow_tf32());
  EXPECT_FALSE(dg::deterministic());
}

TEST(Settings, ApiSetsAndClears) {
  with_env("DG_TF32", nullptr);
  with_env("DG_DETERMINISTIC", nullptr);
  dg::set_allow_tf32(true);
  EXPECT_TRUE(dg::allow_tf32());
  EXPECT_FALSE(dg::deterministic());  // independent flags
  dg::set_deterministic(true);
  EXPECT_TRUE(dg::deterministic());
  dg::set_allow_tf32(false);
  dg::set_deterministic(false);
  EXPECT_FALSE(dg::allow_tf32());
  EXPECT_FALSE(dg::deterministic());
}

TEST(Settings, EnvironmentTurnsOnAndApiOverrides) {
  with_env("DG_TF32", "1");
  with_env("DG_DETERMINISTIC", "1");
  EXPECT_TRUE(dg::allow_tf32());
  EXPECT_TRUE(dg::deterministic());
  dg::set_allow_tf32(false);
  EXPECT_FALSE(dg::allow_tf32());
  EXPECT_TRUE(dg::deterministic());
  with_env("DG_TF32", "0");
  with_env("DG_DETERMINISTIC", "");  // empty counts as unset
  EXPECT_FALSE(dg::allow_tf32());
  EXPECT_FALSE(dg::deterministic());
  with_env("DG_DETERMINISTIC", nullptr);
}

TEST(Settings, BadEnvironmentValueNamesVariableAndAllowedValues) {
  with_env("DG_TF32", "yes");
  std::string msg = error_of(dg::allow_tf32);
  EXPECT_NE(msg.find("DG_TF32"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0 or 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'yes'"), std::string::npos) << msg;
  // Still an error on the next read (nothing cached), and a set_*() call
  // replaces the environment's value altogether.
  EXPECT_THROW(dg::allow_tf32(), dg::Error);
  dg::set_allow_tf32(true);
  EXPECT_TRUE(dg::allow_tf32());

  with_env("DG_DETERMINISTIC", "true");
  msg = error_of(dg::deterministic);
  EXPECT_NE(msg.find("DG_DETERMINISTIC"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'true'"), std::string::npos) << msg;
  with_env("DG_TF32", nullptr);
  with_env("DG_DETERMINISTIC", nullptr);
}

TEST(Settings, EnvFlagParsesOnlyZeroAndOne) {
  setenv("DG_TEST_SETTINGS_FLAG", "1", 1);
  EXPECT_TRUE(dg::detail::env_flag("DG_TEST_SETTINGS_FLAG"));
  setenv("DG_TEST_SETTINGS_FLAG", "0", 1);
  EXPECT_FALSE(dg::detail::env_flag("DG_TEST_SETTINGS_FLAG", true));
  for (const char* bad : {"2", "on", " 1", "1 ", "01", "-1"}) {
    setenv("DG_TEST_SETTINGS_FLAG", bad, 1);
    EXPECT_THROW(dg::detail::env_flag("DG_TEST_SETTINGS_FLAG"), dg::Error) << bad;
  }
  unsetenv("DG_TEST_SETTINGS_FLAG");
  EXPECT_TRUE(dg::detail::env_flag("DG_TEST_SETTINGS_FLAG", true));
  EXPECT_FALSE(dg::detail::env_flag("DG_TEST_SETTINGS_FLAG", false));
}

}  // namespace
