//! The teacher recipes (`recipes/teacher-*.toml`, for `meal train --config`) parse as train
//! configs with no unknown key and pass validation.

use meal::train::TrainConfig;

#[test]
fn teacher_recipes_are_valid_train_configs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("teacher-") && name.ends_with(".toml")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let config: TrainConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            name.contains(&config.arch),
            "{name} trains {}, not the architecture its name says",
            config.arch
        );
        seen += 1;
    }
    assert!(seen >= 2, "expected the teacher recipes, found {seen}");
}
