plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.edgebit.example"
    compileSdk = 34

    defaultConfig {
        applicationId = "dev.edgebit.example"
        minSdk = 26
        targetSdk = 34
        versionCode = 1
        versionName = "1.0"
        // Bundles are built for arm64 only (edgebit export -t android-arm64).
        ndk { abiFilters += listOf("arm64-v8a") }
    }

    packaging {
        jniLibs {
            // Extract jniLibs/arm64-v8a/lib*.so into nativeLibraryDir at install time: the loader and the runner
            // are started from there as programs, which needs real files (not libraries inside the APK).
            useLegacyPackaging = true
            // They are glibc's loader and libraries and prebuilt runtimes: ship them byte for byte.
            keepDebugSymbols += listOf("**/libedgebit_*.so")
        }
    }

    androidResources {
        // Model weights and .npy vectors are copied to filesDir once per install; storing them uncompressed
        // makes that copy a plain read.
        noCompress += listOf("params", "onnx", "pte", "npy")
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
}
