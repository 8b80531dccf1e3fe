// WebappDirectory: the DESIGN.md rules against a real database.
#include <gtest/gtest.h>

#include "allgo/allowed_keys.h"
#include "allgo/config.h"
#include "allgo/directory.h"
#include "test_support.h"

namespace allgo {
namespace {

using test::TestDatabase;

class Directory : public ::testing::Test {
 protected:
  void SetUp() override {
    TestDatabase::Get().Start();
    TestDatabase::Get().Clear();
    Load("");
  }
  void Load(const std::string& extra) {
    Status s = ParseConfig(TestDatabase::Get().ConfigText(extra), "test", &config_);
    ASSERT_TRUE(s.ok()) << s.message();
    conn_ = std::make_unique<MysqlConnection>(config_.mysql);
    dir_ = std::make_unique<WebappDirectory>(config_, conn_.get());
  }
  Config config_;
  std::unique_ptr<MysqlConnection> conn_;
  std::unique_ptr<WebappDirectory> dir_;
};

TEST_F(Directory, MapsRowsToWebappsAndUids) {
  auto& db = TestDatabase::Get();
  uint32_t owner = db.AddUser("o@example.org");
  uint32_t id = db.AddWebapp("sleep", owner, "running", "Sleep: the app");
  Webapp w;
  ASSERT_TRUE(dir_->FindByName("sleep", &w).ok());
  EXPECT_EQ(w.id, id);
  EXPECT_EQ(w.owner_id, owner);
  EXPECT_EQ(w.display_name, "Sleep: the app");
  EXPECT_EQ(w.sandbox_state, "running");
  EXPECT_EQ(dir_->UidOf(w), id + 2000);
  Webapp by_uid;
  ASSERT_TRUE(dir_->FindByUid(id + 2000, &by_uid).ok());
  EXPECT_EQ(by_uid.docker_name, "sleep");
  EXPECT_TRUE(dir_->FindByUid(id + 2001, &by_uid).IsNotFound());
  EXPECT_TRUE(dir_->FindByUid(0, &by_uid).IsNotFound());
}

TEST_F(Directory, InvalidRowsDoNotExist) {
  auto& db = TestDatabase::Get();
  uint32_t owner = db.AddUser("o@example.org");
  db.AddWebapp("Bad-Upper", owner);
  db.AddWebapp("bad name", owner);
  db.AddWebapp("x:y", owner);
  db.AddWebapp(std::string(40, 'a'), owner);
  db.AddWebapp("good", owner);
  // A row whose uid would exceed max_uid.
  db.Exec("INSERT INTO allgo.webapps (id, name, docker_name, user_id) VALUES (60000, 'far', 'far', " +
          std::to_string(owner) + ")");
  Webapp w;
  EXPECT_TRUE(dir_->FindByName("Bad-Upper", &w).IsNotFound());
  EXPECT_TRUE(dir_->FindByName("bad name", &w).IsNotFound());
  EXPECT_TRUE(dir_->FindByName("far", &w).IsNotFound());
  EXPECT_TRUE(dir_->FindByUid(62000, &w).IsNotFound());
  // MySQL compares case- and trailing-space-insensitively; we must not.
  EXPECT_TRUE(dir_->FindByName("GOOD", &w).IsNotFound());
  EXPECT_TRUE(dir_->FindByName("good ", &w).IsNotFound());
  std::vector<Webapp> all;
  ASSERT_TRUE(dir_->List(&all).ok());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].docker_name, "good");
}

TEST_F(Directory, HostileNamesAreNotFoundNotErrors) {
  Webapp w;
  for (const std::string& name : {std::string("x' OR 1=1 -- "), std::string(300, 'a'),
                                 std::string("sleep\n"), std::string("a;DROP TABLE webapps")}) {
    EXPECT_TRUE(dir_->FindByName(name, &w).IsNotFound()) << name;
  }
}

TEST_F(Directory, LoginPolicyOwnerWhileActiveSuperusersOnlyWhenAllowed) {
  auto& db = TestDatabase::Get();
  uint32_t owner = db.AddUser("owner@example.org");
  uint32_t other = db.AddUser("other@example.org");
  uint32_t admin = db.AddUser("admin@example.org", true, true);
  uint32_t inactive = db.AddUser("gone@example.org", false);
  db.AddKey(owner, "key-of-owner");
  db.AddKey(other, "key-of-other");
  db.AddKey(admin, "key-of-admin");
  db.AddKey(inactive, "key-of-gone");
  db.AddWebapp("mine", owner);
  db.AddWebapp("theirs", inactive);
  Webapp mine, theirs;
  { Status st = dir_->FindByName("mine", &mine); ASSERT_TRUE(st.ok()) << st.message(); }
  ASSERT_TRUE(dir_->FindByName("theirs", &theirs).ok());
  std::vector<KeyRow> rows;
  { Status st = dir_->AllowedKeyRows(mine, &rows); ASSERT_TRUE(st.ok()) << st.message(); }
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].public_key, "key-of-owner");
  EXPECT_TRUE(rows[0].is_owner);
  ASSERT_TRUE(dir_->AllowedKeyRows(theirs, &rows).ok());
  EXPECT_TRUE(rows.empty()) << "an inactive owner must not log in";

  Load("[authkeys]\nallow_superusers = true\n");
  { Status st = dir_->AllowedKeyRows(mine, &rows); ASSERT_TRUE(st.ok()) << st.message(); }
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].public_key, "key-of-owner");
  EXPECT_EQ(rows[1].public_key, "key-of-admin");
  EXPECT_EQ(rows[1].email, "admin@example.org");
}

TEST_F(Directory, QueriesCanBeAdaptedToAnotherSchema) {
  auto& db = TestDatabase::Get();
  db.Exec("CREATE TABLE IF NOT EXISTS allgo.apps (app_id INT UNSIGNED PRIMARY KEY, login VARCHAR(64),"
          " title VARCHAR(255), owner INT UNSIGNED, state VARCHAR(16));"
          "DELETE FROM allgo.apps; INSERT INTO allgo.apps VALUES (7, 'other', 'Other', 1, 'idle');"
          "GRANT SELECT ON allgo.apps TO 'ssh'@'localhost'");
  Load("[queries]\n"
       "webapp_by_name = SELECT app_id, login, title, owner, state FROM apps\n"
       "    WHERE login = ?\n"
       "webapp_by_id = SELECT app_id, login, title, owner, state FROM apps WHERE app_id = ?\n"
       "webapp_list = SELECT app_id, login, title, owner, state FROM apps ORDER BY app_id\n");
  Webapp w;
  ASSERT_TRUE(dir_->FindByName("other", &w).ok());
  EXPECT_EQ(w.id, 7u);
  EXPECT_EQ(w.sandbox_state, "idle");
  ASSERT_TRUE(dir_->FindByUid(2007, &w).ok());
  EXPECT_EQ(w.docker_name, "other");
}

TEST_F(Directory, AllowedKeysParsesDropsAndExplains) {
  auto& db = TestDatabase::Get();
  test::TempDir tmp;
  test::KeyPair a = test::MakeKeyPair(tmp.path(), "a");
  test::KeyPair b = test::MakeKeyPair(tmp.path(), "b", "ecdsa");
  uint32_t owner = db.AddUser("owner@example.org");
  db.AddKey(owner, "command=\"rm -rf /\" " + a.public_line + "\n" + b.public_line + "\ngarbage here");
  db.AddWebapp("app", owner);
  AllowedKeys allowed;
  ASSERT_TRUE(LookupAllowedKeys(*dir_, "app", &allowed).ok());
  ASSERT_EQ(allowed.keys.size(), 2u);
  EXPECT_TRUE(allowed.keys[0].key.had_options);
  EXPECT_EQ(allowed.keys[0].user_id, owner);
  EXPECT_EQ(allowed.keys[0].email, "owner@example.org");
  ASSERT_EQ(allowed.dropped.size(), 1u);
  EXPECT_EQ(allowed.dropped[0],
            "key of user " + std::to_string(owner) +
                " (owner@example.org) dropped: line 3: unsupported or unknown key type 'here'");
  EXPECT_TRUE(LookupAllowedKeys(*dir_, "nope", &allowed).IsNotFound());
}

}  // namespace
}  // namespace allgo
