// LineBudget: the shared "N lines per window, then one summary" rule of allgo-sshd's refused
// forwards and the gateway's refused connections, on a clock the test moves.
#include "allgo/line_budget.h"

#include <gtest/gtest.h>

namespace allgo {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(LineBudgetTest, WritesUpToItsLinesThenCountsTheRestForOneSummary) {
  const auto t0 = LineBudget::Clock::time_point{} + seconds(1000);
  LineBudget budget(3, seconds(60), t0);
  LineBudget::Summary ended;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(budget.Take(t0 + seconds(i), &ended)) << i;
    EXPECT_EQ(ended.count, 0u);
  }
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(budget.Take(t0 + seconds(10), &ended));
  EXPECT_EQ(ended.count, 0u);                                // the window has not ended
  EXPECT_EQ(budget.Flush(t0 + seconds(59), false).count, 0u);  // nor yet
  // The first event after the window: its summary comes with it, and it is written itself.
  EXPECT_TRUE(budget.Take(t0 + seconds(61), &ended));
  EXPECT_EQ(ended.count, 5u);
  EXPECT_EQ(ended.span, seconds(61));
  EXPECT_EQ(budget.total(), 9u);
}

TEST(LineBudgetTest, AWindowWithoutExcessHasNoSummary) {
  const auto t0 = LineBudget::Clock::time_point{};
  LineBudget budget(2, seconds(60), t0);
  LineBudget::Summary ended;
  EXPECT_TRUE(budget.Take(t0, &ended));
  EXPECT_TRUE(budget.Take(t0 + seconds(1), &ended));
  EXPECT_EQ(budget.Flush(t0 + seconds(120), false).count, 0u);
  // A new window gives the full budget again.
  EXPECT_TRUE(budget.Take(t0 + seconds(121), &ended));
  EXPECT_TRUE(budget.Take(t0 + seconds(122), &ended));
  EXPECT_FALSE(budget.Take(t0 + seconds(123), &ended));
  EXPECT_EQ(ended.count, 0u);
}

TEST(LineBudgetTest, FlushNowTooEndsTheWindowEarlyAndRestartsIt) {
  const auto t0 = LineBudget::Clock::time_point{};
  LineBudget budget(1, seconds(60), t0);
  LineBudget::Summary ended;
  EXPECT_TRUE(budget.Take(t0, &ended));
  EXPECT_FALSE(budget.Take(t0 + milliseconds(1500), &ended));
  EXPECT_FALSE(budget.Take(t0 + milliseconds(1600), &ended));
  LineBudget::Summary last = budget.Flush(t0 + seconds(2), true);  // the connection ends
  EXPECT_EQ(last.count, 2u);
  EXPECT_EQ(last.span, seconds(2));
  EXPECT_EQ(budget.Flush(t0 + seconds(3), true).count, 0u);  // counted once only
  EXPECT_TRUE(budget.Take(t0 + seconds(4), &ended));         // a fresh window
}

}  // namespace
}  // namespace allgo
