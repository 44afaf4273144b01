#include "control/data_plane.h"

#include "control/policy/policy.h"

namespace sekisho {

uint64_t data_plane::apply(const policy& pol) {
    return commit(prepare(std::make_shared<const policy>(pol), generation() + 1, false));
}

}  // namespace sekisho
