// Placeholder so dg_data has a source until the data/ modules land.
namespace dg::data {
int dg_data_placeholder = 0;
}
