"""The patient: voxel volumes, the case (CT + structures), anatomy meshes, case store, phantom."""
