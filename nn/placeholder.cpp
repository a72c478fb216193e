// Placeholder so dg_nn has a source until the nn/ modules land.
namespace dg::nn {
int dg_nn_placeholder = 0;
}
