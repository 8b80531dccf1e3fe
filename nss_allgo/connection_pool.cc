#include "connection_pool.h"

#include <utility>

namespace allgo::nss {

std::unique_ptr<MysqlConnection> ConnectionPool::TakeIdle(
    uint64_t generation, uint64_t fork_generation,
    std::vector<std::unique_ptr<MysqlConnection>>* drop) {
  while (!idle_.empty()) {
    Idle idle = std::move(idle_.back());
    idle_.pop_back();
    if (idle.generation == generation && idle.fork_generation == fork_generation) {
      return std::move(idle.connection);
    }
    drop->push_back(std::move(idle.connection));
  }
  return nullptr;
}

void ConnectionPool::Release(std::unique_ptr<MysqlConnection> connection, uint64_t generation,
                             uint64_t fork_generation,
                             std::vector<std::unique_ptr<MysqlConnection>>* drop) {
  if (connection == nullptr) return;
  if (idle_.size() < max_idle_) {
    idle_.push_back(Idle{std::move(connection), generation, fork_generation});
  } else {
    drop->push_back(std::move(connection));
  }
}

void ConnectionPool::Clear(std::vector<std::unique_ptr<MysqlConnection>>* drop) {
  for (Idle& idle : idle_) drop->push_back(std::move(idle.connection));
  idle_.clear();
}

}  // namespace allgo::nss
